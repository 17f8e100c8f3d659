package sandbox

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// The request bodies of the vendor pages, verbatim but for credentials.
const (
	pageVMSUpdate = `{ "QualificationScenarioInfoFormDOList": [ { "SceneType": 1101, "Description": "针对代充用户外呼调研,调研出代充的充值渠道,以及店铺名称", "ScenarioOfCalling": "“我在微信上/淘宝上进行充值的啊”\n——好的,先生/女士,那您能告知客服,您充值抖币经常使用的具体公众号名称/淘宝店铺名称吗?\n“你问那么详细是要做什么呢?”", "QualificationId": 1234, "QualificationNo": "QUA164664762128220429" } ], "QualificationMainInfoFormDO": { "QualificationEntity": "xYra", "CertificateThreeInOne": 167, "EnterpriseAddress": "北京市海淀区", "LegalRepresentativeId": "1221454542457", "LegalRepresentativeFrontIdPhotoFileCode": "图片tos文件名", "LegalRepresentativeName": "张三", "DocOfNumberApplyPhotoFileCode": "图片tos文件名", "CommitmentLetterOfNetAccessPhotoFileCode": "图片tos文件名", "UnitSocialCreditCode": "HUHUHUJKKLHFGG", "ThreeInOneBusinessLicensePhotoFileCode": "图片tos文件名", "BusinessLicensePhotoFileCode": "图片tos文件名", "CertificateOfTaxationRegistrationPhotoFileCode": "图片tos文件名", "QualificationId": 1234, "CodeOfOrganizationCertificate": "123456", "LegalRepresentativeBackIdPhotoFileCode": "123456.jpg", "CertificateOfOrganizationCodesPhotoFileCode": "abcdef.jpg", "QualificationNo": "QUA164664762128220429" }, "QualificationAdminInfoFormDO": { "Name": "李四", "ContactNumber": "13111112222", "IdCardNumber": "14254675125", "IdCardFrontPhotoFileCode": "图片tos文件名", "IdCardPhotoWithPeopleFileCode": "图片tos文件名", "QualificationId": 1234, "IdCardBackPhotoFileCode": "abcd.jpg" } }`

	pageAddRolePartner = `{
"entity_id": "E_7216554566647824422",
"industry_role": 3,
"partner_role_info": {
"partner_info": {
"company_type": "企业工商户",
"company_addr": "中国山西晋城",
"cooperation_cases": [
{
"material_type": 1010,
"material_expiretime": "2033-03-03",
"material_paths": [
"certification/resource/f105beee222f1629e7cbfb9e243bc286"
]
}
]
}
},
"institution_role_info": {
"institution_info": {
"record_name": "",
"scene_type": "",
"subject_type": "",
"logo_uri": "",
"trademark_uri": "",
"desc": ""
},
"institution_class_info": {
"industry_class": {
"first_class": 0,
"second_class": 0,
"third_class": 0
},
"employee": {
"employee_material": {
"name": "",
"id_number": "",
"expire_time": "",
"front_path": "",
"back_path": ""
},
"cooperation_agreement": {
"material_type": 0,
"material_expiretime": "",
"material_paths": [""]
}
},
"class_material": {
"material_type": 0,
"material_expiretime": "",
"material_paths": [""]
}
}
}
}`
)

// The page examples succeed on a fresh sandbox, as the repository's
// examples expect.
func TestPageExamplesOnFreshSandbox(t *testing.T) {
	clk := newClock()
	s := start(t, Config{Now: clk.Now})

	status, env, raw := callVolc(t, s.URL(), vmsUpdate(clk.Now(), []byte(pageVMSUpdate)))
	if status != 200 || env.ResponseMetadata.Error != nil || string(env.Result) != "{}" {
		t.Errorf("page UpdateQualification = %d %s", status, raw)
	}
	status, env, raw = callVolc(t, s.URL(), vmsAdd(clk.Now(), []byte(pageVMSUpdate)))
	if status != 200 || env.ResponseMetadata.Error != nil {
		t.Errorf("page AddQualification = %d %s", status, raw)
	}

	tok := token(t, s.URL(), DefaultAppID, DefaultAppSecret)
	var payload map[string]any
	if err := json.Unmarshal([]byte(pageAddRolePartner), &payload); err != nil {
		t.Fatal(err)
	}
	r := douyin(t, s.URL(), "/auth/entity/add_role", DefaultAppID, tok, payload, http.Header{CheckTypeHeader: {""}})
	if r.errCode() != 0 || !strings.HasPrefix(r.body["add_role_taskid"].(string), "Role_") {
		t.Errorf("page add_role (partner) = %s", r.raw)
	}
	r = douyin(t, s.URL(), "/auth/entity/add_role", DefaultAppID, tok,
		institutionRole("E_7230706235463548989", "三九小飞棍来喽", 40000, 40600), nil)
	if r.errCode() != 0 {
		t.Errorf("page add_role (institution) = %s", r.raw)
	}
	for _, q := range []map[string]any{
		seedClassQuery("E_7178703725253394476", "I_7179078906694139948", 40000, 40600, 1),
		seedClassQuery("", "E_787907892525941398", 70000, 70500, 2),
	} {
		if r := douyin(t, s.URL(), "/auth/entity/get_class_auth", DefaultAppID, tok, q, nil); r.errCode() != 0 {
			t.Errorf("page get_class_auth %v = %s", q, r.raw)
		}
	}
	for _, c := range s.Calls() {
		if c.Code != "" || c.HTTPStatus != 200 {
			t.Errorf("call %+v", c)
		}
	}
	if !bytes.Contains(s.Calls()[0].Body, []byte("QUA164664762128220429")) {
		t.Error("raw body not recorded")
	}
}
